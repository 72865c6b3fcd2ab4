FROM alpine
ENV a=1 \
    b
