# azd preprovision hook (Windows): the same as hooks/preprovision.sh. Checks,
# before anything is deployed, that the region offers Flex Consumption with
# the custom runtime (stops if Azure CLI says it does not; warns and goes on
# if Azure CLI cannot say), and finds the vaults that already send
# AuditEvent to the chosen logs account through a setting of their own:
# they get no kvaudit setting (Azure Monitor refuses a second one with the
# same category and destination) and are passed to the template in
# KVAUDIT_VAULTS_ALREADY_LOGGING. Nothing about one vault stops the others.
$ErrorActionPreference = 'Stop'

$keyVaultIds = if ($env:KVAUDIT_KEY_VAULT_IDS) { $env:KVAUDIT_KEY_VAULT_IDS } else { '' }
$location = if ($env:AZURE_LOCATION) { $env:AZURE_LOCATION } else { '' }
$logsAccount = if ($env:KVAUDIT_LOGS_STORAGE_ACCOUNT) { $env:KVAUDIT_LOGS_STORAGE_ACCOUNT } elseif ($env:AUDIT_LOGS_STORAGE_ACCOUNT) { $env:AUDIT_LOGS_STORAGE_ACCOUNT } else { '' }
$ownSetting = if ($env:AUDIT_DIAGNOSTIC_SETTING_NAME) { $env:AUDIT_DIAGNOSTIC_SETTING_NAME } else { '' }

function Normalize([string]$s) { return $s.ToLowerInvariant().Replace(' ', '') }

# ---- 1. region
if (-not $location) {
    Write-Host 'preprovision: AZURE_LOCATION is not set yet: the Flex Consumption region check is skipped (azd asks for it next)'
} else {
    $loc = Normalize $location
    $regions = @(az functionapp list-flexconsumption-locations --query '[].name' --output tsv 2>$null)
    if ($LASTEXITCODE -ne 0) {
        Write-Warning 'preprovision: could not list Flex Consumption regions (az functionapp list-flexconsumption-locations failed: an Azure CLI without it?); going on'
    } else {
        if (-not ($regions | Where-Object { (Normalize $_) -eq $loc })) {
            throw ("preprovision: Flex Consumption is not offered in $location. Regions that offer it (az functionapp list-flexconsumption-locations): " + ($regions -join ', ') + '. Choose one: azd env set AZURE_LOCATION <region>')
        }
        $versions = @(az functionapp list-flexconsumption-runtimes --location $loc --runtime custom --query '[].version' --output tsv 2>$null)
        if ($LASTEXITCODE -ne 0) {
            Write-Warning "preprovision: could not list Flex Consumption runtimes in $location (az functionapp list-flexconsumption-runtimes failed); going on"
        } elseif (-not ($versions | Where-Object { $_ })) {
            throw "preprovision: Flex Consumption in $location does not offer the custom runtime kvaudit runs on (az functionapp list-flexconsumption-runtimes --location $loc --runtime custom lists nothing). Choose another region: azd env set AZURE_LOCATION <region>"
        } else {
            Write-Host "preprovision: $location offers Flex Consumption with the custom runtime ($($versions -join ' '))"
        }
    }
}

# ---- 2. vaults already logging to the logs account
# The same query as hooks/preprovision.sh (infra_test.go keeps them equal).
$query = '(value || @)[].[name, storageAccountId || `""`, length((logs || `[]`)[?enabled && (category == `"AuditEvent"` || categoryGroup == `"audit"` || categoryGroup == `"allLogs"`)])]'

$ids = @($keyVaultIds.Split(',') | ForEach-Object { $_.Trim() } | Where-Object { $_ })
$bad = @($ids | Where-Object { $_ -notmatch '^/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.keyvault/vaults/[^/]+$' })
if ($bad.Count -gt 0) {
    throw ('preprovision: KVAUDIT_KEY_VAULT_IDS holds what is not a Key Vault resource id (/subscriptions/<s>/resourceGroups/<g>/providers/Microsoft.KeyVault/vaults/<name>): ' + ($bad -join ' '))
}

$already = @()
if ($logsAccount) {
    foreach ($id in $ids) {
        $rows = @(az monitor diagnostic-settings list --resource $id --query $query --output tsv 2>$null)
        if ($LASTEXITCODE -ne 0) {
            Write-Warning "preprovision: could not list the diagnostic settings of $id; kvaudit's setting will be made there as asked"
            continue
        }
        $reuse = ''
        foreach ($row in $rows) {
            $f = $row.Split("`t")
            if ($f.Count -lt 3 -or -not $f[0] -or $f[0] -eq $ownSetting) { continue }
            $count = 0
            if (-not [int]::TryParse($f[2], [ref]$count) -or $count -le 0) { continue }
            if ($f[1].Split('/')[-1].ToLowerInvariant() -eq $logsAccount.ToLowerInvariant()) { $reuse = $f[0] }
        }
        if ($reuse) {
            Write-Host "preprovision: $($id.Split('/')[-1]) already sends AuditEvent to $logsAccount (diagnostic setting $reuse): kvaudit reads those logs and makes no setting of its own there"
            $already += $id
        }
    }
}

$value = $already -join ','
if (Get-Command azd -ErrorAction SilentlyContinue) {
    # KEY=value: an empty value survives as an argument in every pwsh.
    azd env set "KVAUDIT_VAULTS_ALREADY_LOGGING=$value"
    if ($LASTEXITCODE -ne 0) { throw "preprovision: azd env set failed ($LASTEXITCODE)" }
} else {
    Write-Host "preprovision: without azd, pass vaultsAlreadyLogging='$value' to the deployment"
}
