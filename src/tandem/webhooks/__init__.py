"""Webhooks: subscriptions per organization, events emitted in the transaction of the change,
deliveries as durable jobs (`webhook.deliver`) signed per Standard Webhooks."""
