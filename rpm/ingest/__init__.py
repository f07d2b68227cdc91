"""Ingest: device messages in, readings and rejections out."""
