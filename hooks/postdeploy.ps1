# azd postdeploy hook (Windows): the same as hooks/postdeploy.sh. Subscribes
# the function app's EventGridTrigger to BlobCreated events of the Key Vault
# audit container of every logs account (one per region holding vaults),
# through each account's Event Grid system topic. Runs after deploy because
# the webhook needs the eventgrid_extension system key and an endpoint that
# answers Event Grid's validation handshake. Idempotent.
$ErrorActionPreference = 'Stop'

foreach ($name in 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_APP_NAME', 'AZURE_FUNCTION_APP_HOSTNAME',
    'EVENTGRID_TOPICS', 'EVENTGRID_SUBSCRIPTION_NAME') {
    if (-not [Environment]::GetEnvironmentVariable($name)) {
        throw "postdeploy: $name is not set (azd sets it from infra/main.bicep outputs)"
    }
}
$rg = $env:AZURE_RESOURCE_GROUP
$app = $env:AZURE_FUNCTION_APP_NAME
$container = if ($env:AUDIT_LOGS_CONTAINER) { $env:AUDIT_LOGS_CONTAINER } else { 'insights-logs-auditevent' }
# Carries the environment's token: environments sharing one logs account
# (and so one system topic) keep one subscription each.
$subscriptionName = $env:EVENTGRID_SUBSCRIPTION_NAME
$deadLetterContainer = 'kvaudit-deadletter'

# The host creates the key when the Event Grid extension starts: wait for
# it, a bounded number of times.
$key = ''
for ($try = 1; $try -le 30 -and -not $key; $try++) {
    $key = az functionapp keys list --resource-group $rg --name $app --query 'systemKeys.eventgrid_extension' --output tsv 2>$null
    if (-not $key) {
        Write-Host "postdeploy: waiting for the eventgrid_extension system key ($try/30)"
        az functionapp function list --resource-group $rg --name $app --output none 2>$null
        Start-Sleep -Seconds 10
    }
}
if (-not $key) {
    throw "postdeploy: no eventgrid_extension key on $app after 30 tries: is the app running? See Application Insights, then run hooks/postdeploy.ps1 again."
}

$endpoint = "https://$($env:AZURE_FUNCTION_APP_HOSTNAME)/runtime/webhooks/eventgrid?functionName=EventGridTrigger&code=$key"
$subject = "/blobServices/default/containers/$container/blobs/"

$entries = @($env:EVENTGRID_TOPICS.Split(',') | ForEach-Object { $_.Trim() } | Where-Object { $_ })
if ($entries.Count -eq 0) { throw 'postdeploy: EVENTGRID_TOPICS names no topic' }
foreach ($entry in $entries) {
    $f = $entry.Split('|', 3)
    if ($f.Count -ne 3 -or -not $f[0] -or -not $f[1] -or -not $f[2]) {
        throw "postdeploy: EVENTGRID_TOPICS entry '$entry' is not topic|resource group|account id"
    }
    $topic, $topicRg, $accountId = $f[0], $f[1], $f[2]
    $accountName = $accountId.Split('/')[-1]
    $extra = @()
    az resource show --ids "$accountId/blobServices/default/containers/$deadLetterContainer" --output none 2>$null
    if ($LASTEXITCODE -eq 0) {
        $extra = @('--deadletter-endpoint', "$accountId/blobServices/default/containers/$deadLetterContainer")
    } else {
        Write-Warning "postdeploy: $accountName has no $deadLetterContainer container: events Event Grid cannot deliver are dropped after 24 hours (CatchUp still reads the blobs)"
    }
    az eventgrid system-topic event-subscription show --resource-group $topicRg --system-topic-name $topic --name $subscriptionName --output none 2>$null
    if ($LASTEXITCODE -eq 0) {
        $verb = 'updated'
        az eventgrid system-topic event-subscription update --resource-group $topicRg --system-topic-name $topic --name $subscriptionName `
            --endpoint $endpoint `
            --included-event-types Microsoft.Storage.BlobCreated `
            --subject-begins-with $subject @extra --output none
    } else {
        $verb = 'created'
        az eventgrid system-topic event-subscription create --resource-group $topicRg --system-topic-name $topic --name $subscriptionName `
            --endpoint-type webhook --endpoint $endpoint `
            --included-event-types Microsoft.Storage.BlobCreated `
            --subject-begins-with $subject @extra --output none
    }
    if ($LASTEXITCODE -ne 0) { throw "postdeploy: az eventgrid failed ($LASTEXITCODE)" }
    Write-Host "postdeploy: event subscription $subscriptionName $verb on $topic ($accountName): BlobCreated under $subject -> $app EventGridTrigger"
}
