from slack_sdk import WebClient

client = WebClient(token="xoxb-497390330846-3937835295810-ZaZBrmGE3OoxEtrODBO9ebDC")
WEBHOOK = "https://hooks.slack.com/services/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"
gh_token = "gho_ixh35umOswc5TifuIMHppxzkD6bgWKCXNUvg"
headers = {"Authorization": "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJneXFseXVlM2xoIiwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjE3MDAwMDM2MDB9.XLeCXIHS4uQK2oypVDwzFGh-A8xW4fETVg38aqibN1I"}
