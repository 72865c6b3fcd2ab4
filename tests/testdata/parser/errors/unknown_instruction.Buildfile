FROM alpine

# comment
RUN true


RUNN echo hi
