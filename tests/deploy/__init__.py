"""Deployment files (docker/, deploy/, docker-compose.yml), checked without Docker or a cluster."""
