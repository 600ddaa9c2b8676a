# The peers' app container for `python3 -m bench --containers`: gunicorn and uWSGI (with its
# python3 plugin) from Debian, on the same base image as fcgikit's worker image, running the
# same WSGI app (bench/apps/hello_wsgi.py). Built by the harness (bench/stacks.py).
ARG BASE=fcgikit/base:bookworm
FROM ${BASE}
RUN set -e; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-gunicorn uwsgi-core uwsgi-plugin-python3; \
    rm -rf /var/lib/apt/lists/*; \
    useradd --system --uid 10001 --user-group --home-dir /srv --shell /usr/sbin/nologin bench
COPY hello_wsgi.py /srv/app/
ENV PYTHONPATH=/srv/app PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER bench
WORKDIR /srv/app
EXPOSE 9000
