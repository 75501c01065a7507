// Azure Relay namespace that carries the tunnels. Hybrid Connections are created and deleted by
// the controller at run time (through ARM, with its managed identity): none are declared here.

@description('Name of the Relay namespace (globally unique, 6-50 characters).')
@minLength(6)
@maxLength(50)
param name string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

resource relay 'Microsoft.Relay/namespaces@2021-11-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {}
}

@description('Resource id of the namespace (scope of the role assignments).')
output id string = relay.id

@description('Name of the namespace.')
output name string = relay.name

@description('Host name of the namespace, e.g. ns.servicebus.windows.net.')
output host string = replace(replace(relay.properties.serviceBusEndpoint, 'https://', ''), ':443/', '')
