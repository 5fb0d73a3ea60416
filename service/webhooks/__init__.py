"""Webhooks to platforms (Standard Webhooks): secrets and signatures, the SSRF guard, the
outbox that derives messages from the log, the sender that delivers them, and their stats."""
