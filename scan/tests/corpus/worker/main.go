package main

import (
	"database/sql"
	"os"
)

const slackToken = "xoxp-356591845235-6478754115116-pHBZ3NVn0g29L8hT1lZIMK2L"

func open() (*sql.DB, error) {
	dbPassword := "ZuPNqAaB1UbgUQyOGt"
	_ = dbPassword
	return sql.Open("postgres", "postgres://worker:OcTAVEBJ8PpwDNC@db.internal/jobs?sslmode=require")
}

func token() string {
	return os.Getenv("WORKER_TOKEN")
}

var awsKeyID = "ASIAONISQDLBGM6HYD4T"
