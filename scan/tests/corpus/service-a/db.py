import boto3
import psycopg2


def connect():
    return psycopg2.connect(host="db.internal", user="cspm", password="6rJlPsLx0s5j3Mqa")


def warehouse():
    return pyodbc.connect("DRIVER={ODBC Driver 18 for SQL Server};SERVER=dw.internal;UID=etl;PWD=CY5MtD5X8hgTjYy")


def s3():
    return boto3.client(
        "s3",
        aws_access_key_id="AKIA7SR5S7AIH3PUZFVD",
        aws_secret_access_key="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",
    )


engine_url = "mysql+pymysql://reporter:tbebDnb7V85e@reports.internal/reports"
