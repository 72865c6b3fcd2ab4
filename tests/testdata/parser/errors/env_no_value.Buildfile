FROM alpine
ENV key
