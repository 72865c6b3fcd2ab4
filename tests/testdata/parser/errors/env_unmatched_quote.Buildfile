FROM alpine
ENV a="x y
