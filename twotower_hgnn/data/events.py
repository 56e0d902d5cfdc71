"""The interaction events of the Dataset contract (no pandas: configuration files and the graph rule
read them). ``stream`` is the strong signal; the others are the weak ones (the paper, §1)."""

EVENTS: tuple[str, ...] = ("stream", "follow", "preview", "intent_to_pay")
WEAK_EVENTS: tuple[str, ...] = ("follow", "preview", "intent_to_pay")
