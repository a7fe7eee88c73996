# azd postdeploy hook (Windows): the same as hooks/postdeploy.sh. Subscribes
# the function app's BlobTrigger to BlobCreated events of the Key Vault audit
# container through the logs account's Event Grid system topic. Runs after
# deploy because the webhook needs the blobs_extension system key and an
# endpoint that answers Event Grid's validation handshake. Idempotent.
$ErrorActionPreference = 'Stop'

foreach ($name in 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_APP_NAME', 'AZURE_FUNCTION_APP_HOSTNAME',
    'EVENTGRID_SYSTEM_TOPIC_NAME', 'EVENTGRID_SYSTEM_TOPIC_RESOURCE_GROUP', 'EVENTGRID_SUBSCRIPTION_NAME') {
    if (-not [Environment]::GetEnvironmentVariable($name)) {
        throw "postdeploy: $name is not set (azd sets it from infra/main.bicep outputs)"
    }
}
$rg = $env:AZURE_RESOURCE_GROUP
$app = $env:AZURE_FUNCTION_APP_NAME
$topicRg = $env:EVENTGRID_SYSTEM_TOPIC_RESOURCE_GROUP
$topic = $env:EVENTGRID_SYSTEM_TOPIC_NAME
$container = if ($env:AUDIT_LOGS_CONTAINER) { $env:AUDIT_LOGS_CONTAINER } else { 'insights-logs-auditevent' }
# Carries the environment's token: environments sharing one logs account
# (and so one system topic) keep one subscription each.
$subscriptionName = $env:EVENTGRID_SUBSCRIPTION_NAME

# The host creates the key when the blob extension starts: wait for it, a
# bounded number of times.
$key = ''
for ($try = 1; $try -le 30 -and -not $key; $try++) {
    $key = az functionapp keys list --resource-group $rg --name $app --query 'systemKeys.blobs_extension' --output tsv 2>$null
    if (-not $key) {
        Write-Host "postdeploy: waiting for the blobs_extension system key ($try/30)"
        az functionapp function list --resource-group $rg --name $app --output none 2>$null
        Start-Sleep -Seconds 10
    }
}
if (-not $key) {
    throw "postdeploy: no blobs_extension key on $app after 30 tries: is the app running? See Application Insights, then run hooks/postdeploy.ps1 again."
}

$endpoint = "https://$($env:AZURE_FUNCTION_APP_HOSTNAME)/runtime/webhooks/blobs?functionName=Host.Functions.BlobTrigger&code=$key"
$subject = "/blobServices/default/containers/$container/blobs/"

az eventgrid system-topic event-subscription show --resource-group $topicRg --system-topic-name $topic --name $subscriptionName --output none 2>$null
if ($LASTEXITCODE -eq 0) {
    $verb = 'updated'
    az eventgrid system-topic event-subscription update --resource-group $topicRg --system-topic-name $topic --name $subscriptionName `
        --endpoint $endpoint `
        --included-event-types Microsoft.Storage.BlobCreated `
        --subject-begins-with $subject --output none
} else {
    $verb = 'created'
    az eventgrid system-topic event-subscription create --resource-group $topicRg --system-topic-name $topic --name $subscriptionName `
        --endpoint-type webhook --endpoint $endpoint `
        --included-event-types Microsoft.Storage.BlobCreated `
        --subject-begins-with $subject --output none
}
if ($LASTEXITCODE -ne 0) { throw "postdeploy: az eventgrid failed ($LASTEXITCODE)" }
Write-Host "postdeploy: event subscription $subscriptionName ${verb}: BlobCreated under $subject -> $app BlobTrigger"
