REQUEST_ID = "53703cf4-bcd3-4098-a1b0-7923caa3a18f"
TENANT_ID = "bcafebb1-ce03-49cf-a941-d8898c371e86"
token_id = "151e67d9-58db-402f-a882-fbcfe3028b30"
session_token_id = "5edd23b7-2e13-43ad-a3da-3210671a3952"
SECRET_VERSION_ID = "fb364086-a2ad-4f24-a4bf-4be18bd92e4e"
trace = "d42f74daae6a5a0709649710dd165451"
commit = "28b1b027f887b60be3ffd5cdca3e5f392384459d"
ETAG = '"40e1e5d85a1ec2e92b02ffb614a846ae"'
