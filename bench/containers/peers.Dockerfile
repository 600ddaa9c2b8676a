# The peers' app container for `python3 -m bench --containers`: fcgikit's base image with
# Debian's gunicorn, uWSGI (python3 plugin), php-cgi and php-fpm, plus fcgikit's runtime and
# the bench's apps copied from the fcgikit stack's own worker image (so fcgikit.spawn runs
# php-cgi exactly as the stack ships it). One image for every peer stack: gunicorn, uWSGI,
# php-fpm, and fcgikit.spawn -- php-cgi. Built by bench/stacks.py; the apt-get layer depends on
# the base only, so it is built once (about a minute) and cached while fcgikit's code changes.
ARG WORKER_IMAGE
ARG BASE=fcgikit/base:bookworm
FROM ${WORKER_IMAGE} AS worker

FROM ${BASE}
RUN set -e; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-gunicorn uwsgi-core uwsgi-plugin-python3 php-cgi php-fpm; \
    rm -rf /var/lib/apt/lists/*; \
    ln -s "$(ls /usr/sbin/php-fpm* | sort -V | tail -1)" /usr/local/sbin/php-fpm; \
    useradd --system --uid 10001 --user-group --home-dir /srv --shell /usr/sbin/nologin fcgikit
COPY --from=worker /opt/fcgikit/ /opt/fcgikit/
COPY --from=worker /srv/app/ /srv/app/
COPY hello_wsgi.py /srv/app/
COPY hello.php /srv/www/php/hello.php
COPY php-fpm.conf /etc/bench-php-fpm.conf
ENV PYTHONPATH=/opt/fcgikit:/srv/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER fcgikit
WORKDIR /srv/app
