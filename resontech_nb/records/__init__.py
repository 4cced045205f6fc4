"""Round records and status names: the one stream every target produces and the dashboard consumes."""
