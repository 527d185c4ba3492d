//! Opaque C handles and the one place where their pointers are cast.
//!
//! Each C handle type (`sb_client`, `sb_secret`, ...) is an empty Rust struct that C only sees
//! by pointer, tied by [`BoxedHandle`] to exactly one Rust type that lives in a `Box`. Creating,
//! borrowing and freeing a handle go through the trait, so no other module casts pointers.

use std::ptr::NonNull;

use crate::boundary::Failure;

/// A C handle owning a boxed `Self::Rust`.
pub(crate) trait BoxedHandle: Sized {
    /// The Rust value behind the handle.
    type Rust;

    /// Moves `value` to the heap and returns the handle C will hold.
    fn into_raw(value: Self::Rust) -> *mut Self {
        Box::into_raw(Box::new(value)).cast::<Self>()
    }

    /// Borrows the value behind a handle, answering NULL with `SB_RESULT_NULL_PARAMETER`.
    ///
    /// # Safety
    /// `ptr` is NULL or was returned by [`BoxedHandle::into_raw`] for this type and not freed,
    /// and nothing frees it while the borrow lives (the C contract of every `_free`).
    unsafe fn borrow<'a>(ptr: *const Self, param: &'static str) -> Result<&'a Self::Rust, Failure> {
        let ptr = NonNull::new(ptr.cast_mut()).ok_or_else(|| Failure::null(param))?;
        // SAFETY: by the caller's contract the pointer came from `into_raw`, i.e. from a live
        // `Box<Self::Rust>`, and stays valid for 'a.
        Ok(unsafe { ptr.cast::<Self::Rust>().as_ref() })
    }

    /// Borrows the value mutably (for iterators, which C must not share between threads).
    ///
    /// # Safety
    /// As [`BoxedHandle::borrow`], and no other borrow of the same handle is live.
    unsafe fn borrow_mut<'a>(
        ptr: *mut Self,
        param: &'static str,
    ) -> Result<&'a mut Self::Rust, Failure> {
        let ptr = NonNull::new(ptr).ok_or_else(|| Failure::null(param))?;
        // SAFETY: as in `borrow`, and the caller guarantees exclusivity.
        Ok(unsafe { ptr.cast::<Self::Rust>().as_mut() })
    }

    /// Drops the value behind a handle; NULL is a no-op.
    ///
    /// # Safety
    /// `ptr` is NULL or was returned by [`BoxedHandle::into_raw`] for this type and is not used
    /// again.
    unsafe fn free(ptr: *mut Self) {
        if let Some(ptr) = NonNull::new(ptr) {
            // SAFETY: the pointer came from `Box::into_raw` of a `Box<Self::Rust>` and the
            // caller gives up its ownership here.
            drop(unsafe { Box::from_raw(ptr.cast::<Self::Rust>().as_ptr()) });
        }
    }
}

/// Checks that an output pointer is not NULL, before any work is done, so a call with a NULL
/// output has no side effects.
pub(crate) fn out_param<T>(ptr: *mut T, param: &'static str) -> Result<NonNull<T>, Failure> {
    NonNull::new(ptr).ok_or_else(|| Failure::null(param))
}

/// Writes an output after success.
///
/// # Safety
/// `out` points to writable memory for a `T` (the caller's contract for output parameters).
pub(crate) unsafe fn write_out<T>(out: NonNull<T>, value: T) {
    // SAFETY: guaranteed by the caller; `write` does not drop the old (uninitialised) content.
    unsafe { out.as_ptr().write(value) }
}
