"""E-mail with an outbox.

Services call `service.enqueue_email` inside their own transaction; the row is delivered only
if that transaction commits. `dispatcher.OutboxDispatcher` (started in the app's lifespan)
delivers due rows through the transport chosen by `transport.transport_from_settings`: SMTP
when a host is configured, otherwise the log.
"""
