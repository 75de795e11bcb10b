# The web app image: Flask + gunicorn, no TensorFlow (the web process never imports it;
# the model server does the preprocessing). Built from the repository root:
#   docker build -f deploy/webapp.Dockerfile -t $REGISTRY/breastdx-webapp:$TAG .
# The build context is deploy/webapp.Dockerfile.dockerignore's list (tests/test_deploy_images.py
# checks every COPY source against it and that every module the app imports is copied).
FROM python:3.10-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

COPY deploy/webapp-requirements.txt ./requirements.txt
RUN pip install --no-cache-dir -r requirements.txt

# The TF-free ground floor the app imports: the data contract, the decision rule, the
# model card reader and the magic-byte check ImageIngest uses (import-linter keeps it free of
# TensorFlow; tests/test_deploy_images.py lists what the app imports).
COPY breastdx_core/ breastdx_core/
# ...and the model server's defaults (its address, the model's name), one source with the server.
COPY serving/__init__.py serving/settings.py serving/
COPY webapp/ webapp/

RUN useradd --system --uid 10001 --no-create-home web
USER 10001

EXPOSE 5000
# BREASTDX_WEB_* settings come from the Deployment (deploy/k8s/base/webapp.yaml).
# The root file system is read-only in the cluster: gunicorn's heartbeat files go to /tmp
# (an emptyDir there); uploads stay in memory (webapp.audit.MemoryOnlyRequest).
CMD ["gunicorn", "--bind", "0.0.0.0:5000", "--workers", "2", "--timeout", "60", "--worker-tmp-dir", "/tmp", \
     "--access-logfile", "-", "webapp:create_app()"]
