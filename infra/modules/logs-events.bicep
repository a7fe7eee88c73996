// The Event Grid system topic of a logs storage account, in that
// account's resource group and region. The subscription that sends
// BlobCreated to the function app's EventGridTrigger is made after deploy
// (hooks/postdeploy), because its webhook needs the eventgrid_extension
// system key and an endpoint that answers Event Grid's validation
// handshake: both exist only once the code runs.

@description('The logs storage account (in this module\'s resource group).')
param storageAccountName string

@description('Region of the logs account: a system topic lives in its source\'s region. A parameter, not the account\'s location read here: a resource\'s location must be known when the deployment starts (BCP120), an existing resource\'s location is not.')
param location string

@description('Name of the system topic to create. Ignored when existingTopicName is set.')
param topicName string

@description('An Event Grid system topic the account already has (an account can have only one); empty to create one.')
param existingTopicName string = ''

param tags object = {}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (empty(existingTopicName)) {
  name: topicName
  location: location
  tags: tags
  properties: {
    source: account.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output topicName string = empty(existingTopicName) ? topic.name : existingTopicName
output resourceGroupName string = resourceGroup().name
