# syntax=docker/dockerfile:1
ARG V=1
RUN echo $V
FROM alpine
