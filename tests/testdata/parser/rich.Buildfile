# syntax=docker/dockerfile:1.7
# escape=\

# A comment after the directives. "# escape=`" here would be just a comment:
# escape=`
ARG BASE=alpine:3.19 VARIANT
FROM --platform=$BUILDPLATFORM ${BASE} as build
  run apk add --no-cache \
      gcc \
# a comment line inside a continuation is dropped

      musl-dev
RUN ["sh", "-c", "echo \"exec\" $HOME"]
RUN [ "sh", "-c", "spaces are fine in JSON" ]
CMD [ 'not', 'json' ]
RUN --mount=type=cache,target=/root/.cache --network=none make
RUN <<EOF
set -e
echo "$HOME"
EOF
RUN python3 <<'PY' > /out.txt
print("no $expansion")
PY
RUN <<-TABS cat
	indented with a tab
		two tabs
	TABS
RUN cat <<A && cat <<"B"
first
A
second
B
COPY <<EOF /etc/motd
hello
EOF
COPY <<A <<B /dir/
a
A
b
B
COPY --from=build --chown=1:1 /src/app /usr/local/bin/
ADD ["file with space.txt", "/dest/"]
ENV a=1 b="x y" c=z\ w d='$a'
ENV legacy value with   spaces
LABEL "com.example.vendor"="ACME Inc" version=1.0 \
      description="multi \
line"
ARG bare
ARG x=1 y=2
WORKDIR /app dir
USER 1000:1000
MAINTAINER Jane Doe <jane@example.com>
STOPSIGNAL SIGTERM
EXPOSE 80 443/tcp 53/udp
VOLUME /data /logs
VOLUME ["/cache"]
HEALTHCHECK --interval=5s --timeout=3s CMD curl -f http://localhost/ || exit 1
HEALTHCHECK CMD ["curl", "-f", "http://localhost/"]
HEALTHCHECK NONE
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ONBUILD COPY --chown=app . /app
ONBUILD RUN make
ENTRYPOINT ["/usr/local/bin/app"]
entrypoint exec app "$@"
FROM build AS final
