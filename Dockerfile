# The upload-and-explain web app (`pneumo serve`, see README.md "The web app") in a container.
#
#   docker build -t pneumo-app .
#   docker run --rm -p 127.0.0.1:8866:8866 pneumo-app      # then open http://127.0.0.1:8866
#
# Serve your own model:  docker run --rm -p 127.0.0.1:8866:8866 -v "$PWD/models:/models:ro" \
#                          pneumo-app .venv/bin/pneumo serve --host 0.0.0.0 --model /models/my.keras
FROM python:3.11-slim-bookworm

# make runs the README's install recipe; nothing else is needed from Debian.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 pneumo
WORKDIR /app
COPY --chown=pneumo:pneumo . /app
USER pneumo

# Everything the library writes stays in the image's checkout, as under `make`.
ENV PNEUMO_HOME=/app/.pneumo \
    TF_CPP_MIN_LOG_LEVEL=3 \
    MPLBACKEND=Agg

# Install exactly as the README does: `make install` creates .venv and runs
# pip install -e ".[book,test,app]" (plus the venv's Jupyter kernel).
RUN make install

# Generate the phantom data and train the quick-profile scratch CNN now (about a minute
# on a laptop CPU), so that the container answers as soon as it starts. Without this step
# `pneumo serve` would do it at the first start, and say so on the page.
RUN .venv/bin/python -c "from pneumo_lib.app import default_model; default_model()"

# Fetch (pip, about 85 MB, SHA-256 checked) the classifier trained on the real Kaggle X-rays
# that `pneumo serve` serves by default, so the container serves it offline. If this build
# cannot reach PyPI the step only says so, and the container serves the phantom CNN above
# with its notice that its answers on real X-rays mean nothing.
RUN .venv/bin/python -c "from pneumo_lib import app; app.reference_app_model()" \
    || echo "note: pneumonia-model-package could not be fetched; the app will serve the phantom CNN"

EXPOSE 8866
# The README's command; inside a container it must listen on all of the container's
# interfaces. Publish it on the host's loopback only, as above (-p 127.0.0.1:8866:8866).
CMD [".venv/bin/pneumo", "serve", "--host", "0.0.0.0", "--port", "8866"]
