# azd preprovision hook (Windows): the same as hooks/preprovision.sh. Checks,
# before anything is deployed, that the region offers Flex Consumption with
# the custom runtime (stops if Azure CLI says it does not; warns and goes on
# if Azure CLI cannot say); reads each vault's region and the first logs
# account's, and names the logs account of every other region holding
# vaults (KVAUDIT_VAULT_REGIONS, KVAUDIT_LOGS_STORAGE_LOCATION,
# KVAUDIT_LOGS_REGIONS: a template cannot learn a region before it deploys);
# and finds the vaults that already send AuditEvent to their region's logs
# account through a setting of their own: they get no kvaudit setting
# (Azure Monitor refuses a second one with the same category and
# destination) and are passed to the template in
# KVAUDIT_VAULTS_ALREADY_LOGGING. Nothing about one vault stops the others.
$ErrorActionPreference = 'Stop'

$keyVaultIds = if ($env:KVAUDIT_KEY_VAULT_IDS) { $env:KVAUDIT_KEY_VAULT_IDS } else { '' }
$location = if ($env:AZURE_LOCATION) { $env:AZURE_LOCATION } else { '' }
$logsAccount = if ($env:KVAUDIT_LOGS_STORAGE_ACCOUNT) { $env:KVAUDIT_LOGS_STORAGE_ACCOUNT } elseif ($env:AUDIT_LOGS_STORAGE_ACCOUNT) { $env:AUDIT_LOGS_STORAGE_ACCOUNT } else { '' }
$ownSetting = if ($env:AUDIT_DIAGNOSTIC_SETTING_NAME) { $env:AUDIT_DIAGNOSTIC_SETTING_NAME } else { '' }
$logsRg = if ($env:KVAUDIT_LOGS_RESOURCE_GROUP) { $env:KVAUDIT_LOGS_RESOURCE_GROUP } else { '' }
# The other regions' accounts: named by the user (region=account[/rg]),
# and those a previous provision made (region=account, an output).
$regionalNamed = if ($env:KVAUDIT_REGIONAL_LOGS_ACCOUNTS) { $env:KVAUDIT_REGIONAL_LOGS_ACCOUNTS } else { '' }
$regionalMade = if ($env:AUDIT_LOGS_ACCOUNTS) { $env:AUDIT_LOGS_ACCOUNTS } else { '' }

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

# ---- 2. regions of the vaults and their logs accounts
$ids = @($keyVaultIds.Split(',') | ForEach-Object { $_.Trim() } | Where-Object { $_ })
$bad = @($ids | Where-Object { $_ -notmatch '^/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.keyvault/vaults/[^/]+$' })
if ($bad.Count -gt 0) {
    throw ('preprovision: KVAUDIT_KEY_VAULT_IDS holds what is not a Key Vault resource id (/subscriptions/<s>/resourceGroups/<g>/providers/Microsoft.KeyVault/vaults/<name>): ' + ($bad -join ' '))
}

$firstRegion = ''
if ($env:KVAUDIT_LOGS_STORAGE_ACCOUNT) {
    $rgArgs = if ($logsRg) { @('--resource-group', $logsRg) } else { @() }
    $loc = az storage account show --name $env:KVAUDIT_LOGS_STORAGE_ACCOUNT @rgArgs --query location --output tsv 2>$null
    if ($LASTEXITCODE -ne 0 -or -not $loc) {
        throw "preprovision: cannot read the region of the logs account $($env:KVAUDIT_LOGS_STORAGE_ACCOUNT) (az storage account show): check its name (KVAUDIT_LOGS_STORAGE_ACCOUNT) and resource group (KVAUDIT_LOGS_RESOURCE_GROUP)"
    }
    $firstRegion = Normalize $loc
    Write-Host "preprovision: logs account $($env:KVAUDIT_LOGS_STORAGE_ACCOUNT) is in $firstRegion"
} elseif ($location) {
    $firstRegion = Normalize $location
}

function RegionEntry([string]$list, [string]$region) {
    foreach ($e in $list.Split(',')) {
        $kv = $e.Trim().Split('=', 2)
        if ($kv.Count -eq 2 -and (Normalize $kv[0]) -eq $region) { return $kv[1].Replace(' ', '') }
    }
    return ''
}
function AccountFor([string]$region) {
    if ($region -eq $firstRegion) { return $logsAccount }
    $named = RegionEntry $regionalNamed $region
    if ($named) { return $named.Split('/')[0] }
    return (RegionEntry $regionalMade $region)
}

$vaultRegions = @()
$others = @()
foreach ($id in $ids) {
    $r = ''
    $loc = az resource show --ids $id --query location --output tsv 2>$null
    if ($LASTEXITCODE -eq 0 -and $loc) {
        $r = Normalize $loc
    } else {
        Write-Warning "preprovision: cannot read the region of $id (az resource show): it gets no diagnostic setting this time"
    }
    $vaultRegions += $r
    if ($r -and $r -ne $firstRegion -and $others -notcontains $r) { $others += $r }
}

$topics = $null
$logsRegions = @()
foreach ($r in $others) {
    $named = RegionEntry $regionalNamed $r
    $entry = "$r||||"
    if ($named) {
        $parts = $named.Split('/', 2)
        $acct = $parts[0]
        $rgArgs = if ($parts.Count -eq 2) { @('--resource-group', $parts[1]) } else { @() }
        $row = az storage account show --name $acct @rgArgs --query '[id, location, resourceGroup]' --output tsv 2>$null
        if ($LASTEXITCODE -ne 0 -or -not $row) {
            throw "preprovision: cannot read the logs account $acct that KVAUDIT_REGIONAL_LOGS_ACCOUNTS names for $r (az storage account show)"
        }
        $f = "$row".Split("`t")
        if ((Normalize $f[1]) -ne $r) {
            throw "preprovision: the logs account $acct named for $r is in $(Normalize $f[1]): Azure Monitor writes a vault's logs only to an account of the vault's region"
        }
        if ($null -eq $topics) {
            $topics = @(az eventgrid system-topic list --query '[].[source, name, resourceGroup]' --output tsv 2>$null)
        }
        $topic, $topicRg = '', ''
        foreach ($t in $topics) {
            $tf = "$t".Split("`t")
            if ($tf.Count -ge 3 -and $tf[0].ToLowerInvariant() -eq $f[0].ToLowerInvariant()) { $topic, $topicRg = $tf[1], $tf[2] }
        }
        $entry = "$r|$acct|$($f[2])|$topic|$topicRg"
        Write-Host "preprovision: ${r}: logs account $acct$(if ($topic) { ", its system topic $topic" })"
    } else {
        $made = RegionEntry $regionalMade $r
        Write-Host "preprovision: ${r}: $(if ($made) { "$made, made by a previous provision" } else { 'a new logs account' })"
    }
    $logsRegions += $entry
}

# ---- 3. vaults already logging to their logs account
# The same query as hooks/preprovision.sh (infra_test.go keeps them equal).
$query = '(value || @)[].[name, storageAccountId || `""`, length((logs || `[]`)[?enabled && (category == `"AuditEvent"` || categoryGroup == `"audit"` || categoryGroup == `"allLogs"`)])]'

$already = @()
for ($i = 0; $i -lt $ids.Count; $i++) {
    $id = $ids[$i]
    $target = if ($vaultRegions[$i]) { AccountFor $vaultRegions[$i] } else { '' }
    # A new account (or an unknown region): no vault can log to it yet.
    if ($target) {
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
            if ($f[1].Split('/')[-1].ToLowerInvariant() -eq $target.ToLowerInvariant()) { $reuse = $f[0] }
        }
        if ($reuse) {
            Write-Host "preprovision: $($id.Split('/')[-1]) already sends AuditEvent to $target (diagnostic setting $reuse): kvaudit reads those logs and makes no setting of its own there"
            $already += $id
        }
    }
}

$value = $already -join ','
$regionsValue = $vaultRegions -join ','
$logsRegionsValue = $logsRegions -join ','
if (Get-Command azd -ErrorAction SilentlyContinue) {
    # KEY=value: an empty value survives as an argument in every pwsh.
    foreach ($kv in "KVAUDIT_VAULT_REGIONS=$regionsValue", "KVAUDIT_LOGS_STORAGE_LOCATION=$firstRegion",
        "KVAUDIT_LOGS_REGIONS=$logsRegionsValue", "KVAUDIT_VAULTS_ALREADY_LOGGING=$value") {
        azd env set $kv
        if ($LASTEXITCODE -ne 0) { throw "preprovision: azd env set failed ($LASTEXITCODE)" }
    }
} else {
    Write-Host "preprovision: without azd, pass keyVaultRegions='$regionsValue' logsStorageLocation='$firstRegion' logsRegions='$logsRegionsValue' vaultsAlreadyLogging='$value' to the deployment"
}
