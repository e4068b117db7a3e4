"""Which Zuora data-change events count toward a real-time sync.

Zuora 360 counts the data-change events of Accounts & Related Objects (reference §1.2: billing
account and contact, invoice, payment and payment invoice, subscription, its rate plans and
charges, and their neighbours). A callout names the changed object (``baseObject``) and the event
(``eventType``, e.g. ``SubscriptionUpdated``); an event counts when its object is monitored.
"""

from __future__ import annotations

from typing import Any

MONITORED_OBJECTS = frozenset({
    "Account", "Contact", "Invoice", "Payment", "PaymentGateway", "InvoicePayment", "PaymentMethod",
    "PaymentTerm", "Product", "UnitOfMeasure", "TaxExemption", "Subscription", "RatePlan", "RatePlanCharge",
    "SubscriptionProductFeature", "RatePlanChargeTier", "Refund", "RefundInvoice", "RefundInvoicePayment",
    "Feature", "KeyMetrics",
})
_SUFFIXES = ("Created", "Updated", "Deleted", "Changed")


def event_object(payload: dict[str, Any]) -> str | None:
    """The Zuora object a callout is about: ``baseObject``, or the event type without its suffix."""
    base = payload.get("baseObject") or payload.get("object")
    if isinstance(base, str) and base:
        return base
    event_type = payload.get("eventType")
    if isinstance(event_type, str):
        for suffix in _SUFFIXES:
            if event_type.endswith(suffix) and len(event_type) > len(suffix):
                return event_type[: -len(suffix)]
    return None


def is_monitored(payload: dict[str, Any]) -> bool:
    """Whether this callout counts toward the next real-time sync."""
    return event_object(payload) in MONITORED_OBJECTS
