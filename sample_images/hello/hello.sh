#!/bin/sh
echo "$GREETING from $(cat "$APP_HOME/greeting.txt")"
cat "$APP_HOME/build-info.txt"
