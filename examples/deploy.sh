#!/bin/sh
# A stand-in deploy command, like the guide's "simulate work": it prints what it would
# deploy and sleeps. Replace it with your own (DEPLOY_COMMAND). deployhook runs it without a
# shell, in a clean environment, and tells it what to deploy through these variables.
set -eu
# Values from the webhook are data: printed with control characters replaced, so that a
# newline in one cannot forge a line of the deploy's log.
show() { printf '%s' "$1" | tr '\000-\037\177' '?'; }
echo "Deploying $(show "$DEPLOYHOOK_REPOSITORY")@$(show "$DEPLOYHOOK_SHA") (ref $(show "$DEPLOYHOOK_REF"))"
echo "  deployment $(show "$DEPLOYHOOK_DEPLOYMENT_ID") to $(show "$DEPLOYHOOK_ENVIRONMENT"), task $(show "$DEPLOYHOOK_TASK")"
echo "  requested by $(show "$DEPLOYHOOK_DEPLOY_USER"); payload $(show "$DEPLOYHOOK_PAYLOAD")"
sleep 2 # simulate work
echo "Deployed."
