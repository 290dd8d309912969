"""Webhooks: a verifying receiver, a durable landing store, and the sensor + asset that apply events.

See docs/webhooks.md for endpoints, environment variables, the landing layout, replay and the sensor.
"""
