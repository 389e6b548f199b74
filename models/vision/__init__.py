"""The product-category vision model: procedural data (``synth``), trainer (``train``),
the shipped ONNX file and its model card. The runtime is ``edge_agent.inference.vision``."""
