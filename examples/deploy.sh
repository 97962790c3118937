#!/bin/sh
# A stand-in deploy command, like the guide's "simulate work": it prints what it would
# deploy and sleeps. Replace it with your own (DEPLOY_COMMAND). deployhook runs it without a
# shell, in a clean environment, and tells it what to deploy through these variables.
set -eu
echo "Deploying ${DEPLOYHOOK_REPOSITORY}@${DEPLOYHOOK_SHA} (ref ${DEPLOYHOOK_REF})"
echo "  deployment ${DEPLOYHOOK_DEPLOYMENT_ID} to ${DEPLOYHOOK_ENVIRONMENT}, task ${DEPLOYHOOK_TASK}"
echo "  requested by ${DEPLOYHOOK_DEPLOY_USER}; payload ${DEPLOYHOOK_PAYLOAD}"
sleep 2 # simulate work
echo "Deployed."
