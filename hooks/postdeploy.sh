#!/bin/sh
# azd postdeploy hook: subscribes the function app's BlobTrigger to
# BlobCreated events of the Key Vault audit container, through the Event
# Grid system topic that infra/main.bicep made on the logs account.
#
# It runs after deploy because the webhook needs the blobs_extension system
# key, and Event Grid's validation handshake needs the endpoint answering:
# both exist only once the code is deployed and the host has started.
# Idempotent: an existing subscription is updated to the current key.
#
# Without azd, set the variables below (outputs of the deployment) and run it.
set -eu

: "${AZURE_RESOURCE_GROUP:?set by azd from infra/main.bicep outputs}"
: "${AZURE_FUNCTION_APP_NAME:?}"
: "${AZURE_FUNCTION_APP_HOSTNAME:?}"
: "${EVENTGRID_SYSTEM_TOPIC_NAME:?}"
: "${EVENTGRID_SYSTEM_TOPIC_RESOURCE_GROUP:?}"
# The subscription's name carries the environment's token: environments
# sharing one logs account (and so one system topic) keep one each.
: "${EVENTGRID_SUBSCRIPTION_NAME:?}"
CONTAINER="${AUDIT_LOGS_CONTAINER:-insights-logs-auditevent}"
SUBSCRIPTION_NAME="$EVENTGRID_SUBSCRIPTION_NAME"

# The host creates the key when the blob extension starts: wait for it, a
# bounded number of times.
key=""
tries=0
while [ -z "$key" ] && [ "$tries" -lt 30 ]; do
  tries=$((tries + 1))
  key=$(az functionapp keys list --resource-group "$AZURE_RESOURCE_GROUP" --name "$AZURE_FUNCTION_APP_NAME" \
    --query "systemKeys.blobs_extension" --output tsv 2>/dev/null || true)
  if [ -z "$key" ]; then
    echo "postdeploy: waiting for the blobs_extension system key ($tries/30)"
    # Listing the functions wakes the app if it scaled to zero.
    az functionapp function list --resource-group "$AZURE_RESOURCE_GROUP" --name "$AZURE_FUNCTION_APP_NAME" --output none 2>/dev/null || true
    sleep 10
  fi
done
if [ -z "$key" ]; then
  echo "postdeploy: no blobs_extension key on $AZURE_FUNCTION_APP_NAME after $tries tries: is the app running? See Application Insights, then run hooks/postdeploy.sh again." >&2
  exit 1
fi

endpoint="https://${AZURE_FUNCTION_APP_HOSTNAME}/runtime/webhooks/blobs?functionName=Host.Functions.BlobTrigger&code=${key}"
subject="/blobServices/default/containers/${CONTAINER}/blobs/"

if az eventgrid system-topic event-subscription show --resource-group "$EVENTGRID_SYSTEM_TOPIC_RESOURCE_GROUP" \
  --system-topic-name "$EVENTGRID_SYSTEM_TOPIC_NAME" --name "$SUBSCRIPTION_NAME" --output none 2>/dev/null; then
  verb=update
  az eventgrid system-topic event-subscription update --resource-group "$EVENTGRID_SYSTEM_TOPIC_RESOURCE_GROUP" \
    --system-topic-name "$EVENTGRID_SYSTEM_TOPIC_NAME" --name "$SUBSCRIPTION_NAME" \
    --endpoint "$endpoint" \
    --included-event-types Microsoft.Storage.BlobCreated \
    --subject-begins-with "$subject" --output none
else
  verb=create
  az eventgrid system-topic event-subscription create --resource-group "$EVENTGRID_SYSTEM_TOPIC_RESOURCE_GROUP" \
    --system-topic-name "$EVENTGRID_SYSTEM_TOPIC_NAME" --name "$SUBSCRIPTION_NAME" \
    --endpoint-type webhook --endpoint "$endpoint" \
    --included-event-types Microsoft.Storage.BlobCreated \
    --subject-begins-with "$subject" --output none
fi
echo "postdeploy: event subscription $SUBSCRIPTION_NAME ${verb}d: BlobCreated under $subject -> $AZURE_FUNCTION_APP_NAME BlobTrigger"
