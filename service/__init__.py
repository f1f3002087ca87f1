"""The HTTP service: FastAPI + uvicorn over artifacts from the model store."""
