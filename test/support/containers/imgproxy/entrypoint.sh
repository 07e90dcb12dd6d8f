#!/bin/sh
# As imgproxy's image: runs the command it is given (imgproxy by default).
exec "$@"
