# Two images from one file:
#   target `web`    - the Flask app on gunicorn (also runs `python -m db.setup`); no GPU needed
#   target `worker` - the Celery worker on TensorFlow's GPU image
# Build context: the repository root (see docker-compose.yml).

FROM python:3.11-slim AS web
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 RADBATCH_HOME=/data \
    PROMETHEUS_MULTIPROC_DIR=/tmp/radbatch-web-metrics
WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
RUN useradd --create-home --uid 1000 radbatch && mkdir -p /data && chown radbatch /data
USER radbatch
EXPOSE 5000
CMD ["sh", "-c", "python -m db.setup && rm -rf $PROMETHEUS_MULTIPROC_DIR && mkdir -p $PROMETHEUS_MULTIPROC_DIR && exec gunicorn --bind 0.0.0.0:5000 --workers 4 --threads 4 --timeout 300 --no-control-socket --access-logfile - --logger-class deploy.access_log.QuietPollsLogger 'web:create_app()'"]

FROM tensorflow/tensorflow:2.21.0-gpu AS worker
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 RADBATCH_HOME=/data TF_CPP_MIN_LOG_LEVEL=2 \
    TF_FORCE_GPU_ALLOW_GROWTH=true
WORKDIR /app
COPY requirements.txt .
# The base image brings TensorFlow with CUDA; install everything else, with ONNX Runtime's CUDA build.
RUN grep -v -E '^(tensorflow|onnxruntime)' requirements.txt > /tmp/requirements-worker.txt \
    && pip install -r /tmp/requirements-worker.txt 'onnxruntime-gpu>=1.20'
COPY . .
RUN useradd --create-home --uid 1000 radbatch && mkdir -p /data && chown radbatch /data
USER radbatch
EXPOSE 9540
CMD ["celery", "-A", "worker.celery_app", "worker", "-Q", "radbatch-u0,radbatch-u1,radbatch-u2,radbatch-u3,radbatch-u4,radbatch-u5,radbatch-u6,radbatch-u7,radbatch-notify", "--pool", "prefork", "--concurrency", "1", "--loglevel", "INFO"]
