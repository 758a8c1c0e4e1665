"""Sink stages: where results leave the pipeline (files, MQTT, video, the browser)."""
