# The peers' app container for `python3 -m bench --containers`: fcgikit's own worker image
# (its base and runtime, as `fcgikit up` built it for the bench's stack) with Debian's
# gunicorn, uWSGI (python3 plugin), php-cgi and php-fpm added, and the bench's apps. One image
# for every peer stack: gunicorn, uWSGI, php-fpm, and fcgikit.spawn -- php-cgi.
# Built by bench/stacks.py (one apt-get; about a minute the first time).
ARG WORKER_IMAGE
FROM ${WORKER_IMAGE}
USER root
RUN set -e; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3-gunicorn uwsgi-core uwsgi-plugin-python3 php-cgi php-fpm; \
    rm -rf /var/lib/apt/lists/*; \
    ln -s "$(ls /usr/sbin/php-fpm* | sort -V | tail -1)" /usr/local/sbin/php-fpm
COPY hello_wsgi.py /srv/app/
COPY hello.php /srv/www/php/hello.php
COPY php-fpm.conf /etc/bench-php-fpm.conf
USER fcgikit
WORKDIR /srv/app
