# streammood worker image: capture, infer, listen, subscribe, analyze (no training extras).
# Build: docker build -t streammood .    Run: see compose.yaml and docs/operations.md
FROM python:3.11-slim

# PortAudio for sounddevice (live capture); libsndfile for soundfile (file decoding).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libportaudio2 libsndfile1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY streammood ./streammood
RUN pip install --no-cache-dir .
# Shipped model artifacts; STREAMMOOD_MODEL points the commands at the default one.
COPY models ./models

RUN useradd --create-home --uid 10001 streammood
USER streammood
ENV PYTHONUNBUFFERED=1 \
    XDG_RUNTIME_DIR=/tmp \
    STREAMMOOD_MODEL=/app/models/streammood-4q

CMD ["streammood", "--help"]
