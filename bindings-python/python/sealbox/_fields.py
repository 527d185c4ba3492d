"""Several fields of one JSON secret, read together and wiped together."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any, Literal, NoReturn, Self

from sealbox._native import Secret

__all__ = ["SecretFields"]


class SecretFields:
    """The fields of one JSON secret that :meth:`Sealbox.get_fields` read, each in locked memory
    of its own (a :class:`Secret` per field, none holding the whole document).

    The values are reachable inside one ``with`` block, as read-only ``memoryview`` objects on the
    locked bytes, by attribute or by item::

        with sb.get_fields("predis/prod/aws", ["access_key_id", "secret_access_key"]) as creds:
            client = make_client(creds.access_key_id, creds["secret_access_key"])

    Leaving the block wipes every field and releases every view; so does :meth:`close`. Item
    access works for any field name; attribute access for names that are identifiers and do not
    clash with this class's own attributes (``name``, ``close``, ...). ``repr`` shows the field
    names, never a value; pickling and copying are refused.
    """

    __slots__ = ("_name", "_version", "_secrets", "_views", "_state")

    def __init__(self, name: str, version: str, fields: Sequence[str], secrets: Sequence[Secret]) -> None:
        if len(fields) != len(secrets):
            raise ValueError("one Secret per field is needed")
        self._name = name
        self._version = version
        self._secrets: dict[str, Secret] = dict(zip(fields, secrets, strict=True))
        self._views: dict[str, memoryview] = {}
        self._state = "new"  # "new" -> "open" (inside `with`) -> "closed"

    @property
    def name(self) -> str:
        """The secret's name."""
        return self._name

    @property
    def version(self) -> str:
        """The version every field was read from."""
        return self._version

    @property
    def fields(self) -> tuple[str, ...]:
        """The field names, in the order they were asked for."""
        return tuple(self._secrets)

    @property
    def closed(self) -> bool:
        """Whether the fields were wiped."""
        return self._state == "closed"

    def secret(self, field: str) -> Secret:
        """The :class:`Secret` holding ``field`` (for ``equals``, or to keep one field past the
        block: it is wiped by :meth:`close` all the same)."""
        try:
            return self._secrets[field]
        except KeyError:
            raise KeyError(f"no field {field!r} was read; read fields: {list(self._secrets)}") from None

    def __enter__(self) -> Self:
        if self._state == "closed":
            raise ValueError("these fields are closed; read them again from the client")
        if self._state == "open":
            raise ValueError("these fields are already open in a `with` block")
        try:
            for field, secret in self._secrets.items():
                self._views[field] = secret.__enter__()
        except BaseException:
            self.close()
            raise
        self._state = "open"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        self.close()
        return False

    def close(self) -> None:
        """Wipes every field and invalidates the views handed out. Idempotent."""
        self._state = "closed"
        self._views.clear()
        for secret in self._secrets.values():
            secret.close()

    def __getitem__(self, field: str) -> memoryview:
        """The read-only view on ``field``'s locked bytes; only inside the ``with`` block."""
        if self._state != "open":
            if self._state == "closed":
                raise ValueError("these fields are closed; read them again from the client")
            raise ValueError("use the fields inside `with fields:` (which wipes them at its end)")
        try:
            return self._views[field]
        except KeyError:
            raise KeyError(f"no field {field!r} was read; read fields: {list(self._secrets)}") from None

    def __getattr__(self, field: str) -> memoryview:
        if field.startswith("_"):
            raise AttributeError(field)
        try:
            return self[field]
        except KeyError:
            raise AttributeError(f"no field {field!r} was read; read fields: {list(self._secrets)}") from None

    def __contains__(self, field: object) -> bool:
        return field in self._secrets

    def __iter__(self) -> Iterator[str]:
        return iter(self._secrets)

    def __len__(self) -> int:
        return len(self._secrets)

    def __repr__(self) -> str:
        state = "closed" if self._state == "closed" else "[REDACTED]"
        return f"SecretFields(name={self._name!r}, version={self._version!r}, fields={list(self._secrets)!r}, values={state})"

    def _refuse_copy(self) -> NoReturn:
        raise TypeError(
            "sealbox.SecretFields cannot be pickled or copied; pass the secret's name and read it "
            "again where it is needed"
        )

    def __reduce__(self) -> NoReturn:
        self._refuse_copy()

    def __reduce_ex__(self, protocol: Any, /) -> NoReturn:
        self._refuse_copy()

    def __copy__(self) -> NoReturn:
        self._refuse_copy()

    def __deepcopy__(self, memo: Any, /) -> NoReturn:
        self._refuse_copy()
