FROM alpine
HEALTHCHECK --interval=1s PING x
