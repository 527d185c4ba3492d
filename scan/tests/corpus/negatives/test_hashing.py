def test_bcrypt_roundtrip():
    password_hash = "$2b$12$ZdhQenAxmuLY/g0fAO0RstPIjT7dR3iHj4hCxao1jrTWSQL//S9hz"
    assert verify("correct horse", password_hash)


def test_token_shape():
    assert len(make_token()) == 32
