"""Price books: HQ publishes item prices for the chain or one store; stores get them as
signed, versioned documents (``service``), announced over MQTT (decision 0015)."""
