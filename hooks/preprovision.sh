#!/bin/sh
# azd preprovision hook: the checks that Azure would otherwise make halfway
# through a deployment, made before it starts.
#
# 1. The region: Flex Consumption and its `custom` runtime (kvaudit is a
#    custom handler) are offered only in some regions. If Azure CLI says the
#    region lacks either, stop here with the regions to choose from. If
#    Azure CLI cannot say (an older version without the command), warn and
#    go on: Azure will tell.
# 2. The regions (issue 17): Azure Monitor writes a vault's logs only to a
#    storage account in the vault's region, and a template cannot learn a
#    vault's region before it deploys (a location must be a deploy-time
#    constant, BCP120). So the hook reads each vault's location
#    (az resource show) and the first logs account's, and passes them to
#    the template: KVAUDIT_VAULT_REGIONS (each vault's, in order),
#    KVAUDIT_LOGS_STORAGE_LOCATION, and KVAUDIT_LOGS_REGIONS, one entry per
#    other region holding vaults, region|account|resourceGroup|topic|
#    topicResourceGroup: an empty account is one the template makes; an
#    account named in KVAUDIT_REGIONAL_LOGS_ACCOUNTS (region=account or
#    region=account/resourceGroup) is used as it is, once checked to be in
#    that region, with the Event Grid system topic it already has (an
#    account can have only one). A vault whose location cannot be read gets
#    no diagnostic setting, with a warning; the others go on.
# 3. The vaults: Azure Monitor refuses a second diagnostic setting with the
#    same category and destination. A vault that already sends AuditEvent to
#    its region's logs account through a setting of its own needs no
#    kvaudit setting (its logs land in the same container), so it is passed
#    to the template in KVAUDIT_VAULTS_ALREADY_LOGGING and skipped there. A
#    vault whose settings cannot be listed keeps its place: the template
#    tries, and Azure says why if it cannot. Nothing about one vault stops
#    the deployment of the others.
#
# Its paths do not depend on the directory it runs from. Without azd, run
# it with the same variables set; it prints the values to pass as the
# template's parameters.
set -eu

KEY_VAULT_IDS="${KVAUDIT_KEY_VAULT_IDS:-}"
LOCATION="${AZURE_LOCATION:-}"
# The logs account: the one named, else the one a previous provision of
# this environment created (an output azd keeps), else none yet (a new
# account, which no vault can already log to).
LOGS_ACCOUNT="${KVAUDIT_LOGS_STORAGE_ACCOUNT:-${AUDIT_LOGS_STORAGE_ACCOUNT:-}}"
# Where the first logs account is, when named (its resource group).
LOGS_RG="${KVAUDIT_LOGS_RESOURCE_GROUP:-}"
# The other regions' accounts: named by the user (region=account[/rg]),
# and those a previous provision made (region=account, an output).
REGIONAL_NAMED="${KVAUDIT_REGIONAL_LOGS_ACCOUNTS:-}"
REGIONAL_MADE="${AUDIT_LOGS_ACCOUNTS:-}"
# kvaudit's own setting, from a previous provision: the template owns it.
OWN_SETTING="${AUDIT_DIAGNOSTIC_SETTING_NAME:-}"

lower() { printf '%s' "$1" | tr '[:upper:]' '[:lower:]'; }

# ---- 1. region

# normalize turns "West Europe" or "westeurope" into "westeurope".
normalize() { lower "$1" | tr -d ' '; }

if [ -z "$LOCATION" ]; then
  echo "preprovision: AZURE_LOCATION is not set yet: the Flex Consumption region check is skipped (azd asks for it next)"
else
  loc=$(normalize "$LOCATION")
  if regions=$(az functionapp list-flexconsumption-locations --query "[].name" --output tsv 2>/dev/null); then
    found=no
    for r in $(printf '%s\n' "$regions" | tr ' ' '_'); do
      [ "$(normalize "$(printf '%s' "$r" | tr '_' ' ')")" = "$loc" ] && found=yes
    done
    if [ "$found" = no ]; then
      echo "preprovision: Flex Consumption is not offered in $LOCATION. Regions that offer it (az functionapp list-flexconsumption-locations):" >&2
      printf '%s\n' "$regions" | sed 's/^/  /' >&2
      echo "Choose one: azd env set AZURE_LOCATION <region>" >&2
      exit 1
    fi
    if versions=$(az functionapp list-flexconsumption-runtimes --location "$loc" --runtime custom --query "[].version" --output tsv 2>/dev/null); then
      if [ -z "$versions" ]; then
        echo "preprovision: Flex Consumption in $LOCATION does not offer the custom runtime kvaudit runs on (az functionapp list-flexconsumption-runtimes --location $loc --runtime custom lists nothing). Choose another region: azd env set AZURE_LOCATION <region>" >&2
        exit 1
      fi
      echo "preprovision: $LOCATION offers Flex Consumption with the custom runtime ($(printf '%s' "$versions" | tr '\n' ' '))"
    else
      echo "preprovision: warning: could not list Flex Consumption runtimes in $LOCATION (az functionapp list-flexconsumption-runtimes failed); going on" >&2
    fi
  else
    echo "preprovision: warning: could not list Flex Consumption regions (az functionapp list-flexconsumption-locations failed: an Azure CLI without it?); going on" >&2
  fi
fi

# ---- 2. regions of the vaults and their logs accounts

ids=$(printf '%s' "$KEY_VAULT_IDS" | tr ',' '\n')
bad=""
for id in $ids; do
  case "$(lower "$id")" in
  /subscriptions/*/resourcegroups/*/providers/microsoft.keyvault/vaults/*) ;;
  *) bad="$bad $id" ;;
  esac
done
if [ -n "$bad" ]; then
  echo "preprovision: KVAUDIT_KEY_VAULT_IDS holds what is not a Key Vault resource id (/subscriptions/<s>/resourceGroups/<g>/providers/Microsoft.KeyVault/vaults/<name>):$bad" >&2
  exit 1
fi

# The first logs account's region: a named account's own, read here; a
# new one is made in AZURE_LOCATION.
FIRST_REGION=""
if [ -n "${KVAUDIT_LOGS_STORAGE_ACCOUNT:-}" ]; then
  if loc=$(az storage account show --name "$KVAUDIT_LOGS_STORAGE_ACCOUNT" ${LOGS_RG:+--resource-group "$LOGS_RG"} --query location --output tsv 2>/dev/null) && [ -n "$loc" ]; then
    FIRST_REGION=$(normalize "$loc")
    echo "preprovision: logs account $KVAUDIT_LOGS_STORAGE_ACCOUNT is in $FIRST_REGION"
  else
    echo "preprovision: cannot read the region of the logs account $KVAUDIT_LOGS_STORAGE_ACCOUNT (az storage account show): check its name (KVAUDIT_LOGS_STORAGE_ACCOUNT) and resource group (KVAUDIT_LOGS_RESOURCE_GROUP)" >&2
    exit 1
  fi
elif [ -n "$LOCATION" ]; then
  FIRST_REGION=$(normalize "$LOCATION")
fi

# region_entry LIST REGION prints what LIST (region=value, comma-separated)
# says of REGION, or nothing.
region_entry() {
  printf '%s\n' "$1" | tr ',' '\n' | while IFS= read -r e; do
    if [ "$(normalize "${e%%=*}")" = "$2" ]; then
      printf '%s' "${e#*=}" | tr -d ' '
      break
    fi
  done
}
# account_for REGION prints the name of the region's logs account as far as
# it exists yet: the first account, one named, one a previous provision
# made; nothing for an account the template is still to make.
account_for() {
  if [ "$1" = "$FIRST_REGION" ]; then
    printf '%s' "$LOGS_ACCOUNT"
    return
  fi
  named=$(region_entry "$REGIONAL_NAMED" "$1")
  if [ -n "$named" ]; then
    printf '%s' "${named%%/*}"
    return
  fi
  region_entry "$REGIONAL_MADE" "$1"
}

vault_regions=""
n=0
seen=" "
others=""
for id in $ids; do
  r=""
  if loc=$(az resource show --ids "$id" --query location --output tsv 2>/dev/null) && [ -n "$loc" ]; then
    r=$(normalize "$loc")
  else
    echo "preprovision: warning: cannot read the region of $id (az resource show): it gets no diagnostic setting this time" >&2
  fi
  if [ "$n" -eq 0 ]; then vault_regions="$r"; else vault_regions="$vault_regions,$r"; fi
  n=$((n + 1))
  if [ -n "$r" ] && [ "$r" != "$FIRST_REGION" ]; then
    case "$seen" in
    *" $r "*) ;;
    *)
      seen="$seen$r "
      others="$others $r"
      ;;
    esac
  fi
done

# Every other region's entry; a named account is checked to be in its
# region, and its existing system topic is found.
tab=$(printf '\t')
topics=""
topics_listed=no
logs_regions=""
for r in $others; do
  named=$(region_entry "$REGIONAL_NAMED" "$r")
  entry="$r||||"
  if [ -n "$named" ]; then
    acct=${named%%/*}
    rg=""
    [ "$acct" = "$named" ] || rg=${named#*/}
    if ! row=$(az storage account show --name "$acct" ${rg:+--resource-group "$rg"} --query "[id, location, resourceGroup]" --output tsv 2>/dev/null) || [ -z "$row" ]; then
      echo "preprovision: cannot read the logs account $acct that KVAUDIT_REGIONAL_LOGS_ACCOUNTS names for $r (az storage account show)" >&2
      exit 1
    fi
    acct_id=${row%%"$tab"*}
    rest=${row#*"$tab"}
    acct_loc=$(normalize "${rest%%"$tab"*}")
    acct_rg=${rest#*"$tab"}
    if [ "$acct_loc" != "$r" ]; then
      echo "preprovision: the logs account $acct named for $r is in $acct_loc: Azure Monitor writes a vault's logs only to an account of the vault's region" >&2
      exit 1
    fi
    if [ "$topics_listed" = no ]; then
      topics=$(az eventgrid system-topic list --query "[].[source, name, resourceGroup]" --output tsv 2>/dev/null || true)
      topics_listed=yes
    fi
    topic=""
    topic_rg=""
    while IFS="$tab" read -r source tname trg; do
      if [ -n "$source" ] && [ "$(lower "$source")" = "$(lower "$acct_id")" ]; then
        topic=$tname
        topic_rg=$trg
      fi
    done <<EOF
$topics
EOF
    entry="$r|$acct|$acct_rg|$topic|$topic_rg"
    echo "preprovision: $r: logs account $acct${topic:+, its system topic $topic}"
  else
    made=$(region_entry "$REGIONAL_MADE" "$r")
    echo "preprovision: $r: ${made:-a new logs account}${made:+, made by a previous provision}"
  fi
  logs_regions="${logs_regions:+$logs_regions,}$entry"
done

# ---- 3. vaults already logging to their logs account

# One row per diagnostic setting: its name, its storage account id and how
# many of its enabled log entries carry AuditEvent (by category, or by the
# category groups that hold it: audit, allLogs). (value || @) reads both
# shapes az has printed: a list, and {"value": [...]} in older versions.
QUERY='(value || @)[].[name, storageAccountId || `""`, length((logs || `[]`)[?enabled && (category == `"AuditEvent"` || categoryGroup == `"audit"` || categoryGroup == `"allLogs"`)])]'

already=""
tab=$(printf '\t')
i=0
for id in $ids; do
  i=$((i + 1))
  r=$(printf '%s' "$vault_regions" | cut -d, -f"$i")
  target=""
  [ -z "$r" ] || target=$(account_for "$r")
  # A new account (or an unknown region): no vault can log to it yet.
  if [ -n "$target" ]; then
    if ! rows=$(az monitor diagnostic-settings list --resource "$id" --query "$QUERY" --output tsv 2>/dev/null); then
      echo "preprovision: warning: could not list the diagnostic settings of $id; kvaudit's setting will be made there as asked" >&2
      continue
    fi
    reuse=""
    while IFS="$tab" read -r name account count; do
      [ -n "$name" ] || continue
      [ "$name" != "$OWN_SETTING" ] || continue
      [ "${count:-0}" -gt 0 ] 2>/dev/null || continue
      if [ "$(lower "${account##*/}")" = "$(lower "$target")" ]; then
        reuse="$name"
      fi
    done <<EOF
$rows
EOF
    if [ -n "$reuse" ]; then
      echo "preprovision: ${id##*/} already sends AuditEvent to $target (diagnostic setting $reuse): kvaudit reads those logs and makes no setting of its own there"
      already="${already:+$already,}$id"
    fi
  fi
done

if command -v azd >/dev/null 2>&1; then
  azd env set "KVAUDIT_VAULT_REGIONS=$vault_regions"
  azd env set "KVAUDIT_LOGS_STORAGE_LOCATION=$FIRST_REGION"
  azd env set "KVAUDIT_LOGS_REGIONS=$logs_regions"
  azd env set "KVAUDIT_VAULTS_ALREADY_LOGGING=$already"
else
  echo "preprovision: without azd, pass keyVaultRegions='$vault_regions' logsStorageLocation='$FIRST_REGION' logsRegions='$logs_regions' vaultsAlreadyLogging='$already' to the deployment"
fi
