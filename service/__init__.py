"""tap-restore inference service: numpy + onnxruntime + FastAPI, never torch."""
