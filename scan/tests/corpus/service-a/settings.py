import os

DEBUG = False
ALLOWED_HOSTS = ["service-a.example.org"]
SECRET_KEY = "django-insecure-2weae&dmm4eerf#kymo6%2xn&a3t-b1tunm+210*2m8(__t&%$"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "service_a",
        "USER": "service_a",
        "PASSWORD": "EJLh1mC95yLN",
        "HOST": "db.internal",
    }
}

AWS_STORAGE_BUCKET_NAME = "service-a-media"
AWS_ACCESS_KEY_ID = "AKIAJTAFEOLFIG4TAX5J"
AWS_SECRET_ACCESS_KEY = "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"

EMAIL_HOST_PASSWORD = os.environ["EMAIL_HOST_PASSWORD"]
STRIPE_API_KEY = "rk_live_qR1xRgnLDNcuApq56vNSvsT4"
