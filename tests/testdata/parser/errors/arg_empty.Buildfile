ARG
FROM alpine
