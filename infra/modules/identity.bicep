// Two user-assigned managed identities: one for the controller (manages Hybrid Connections and
// lists the namespace keys), one for the gateway (sends on the namespace). Both are attached to
// the App Service app; each component picks its own by client id.

@description('Name prefix of the identities.')
param prefix string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

resource controller 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${prefix}-controller'
  location: location
  tags: tags
}

resource gateway 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${prefix}-gateway'
  location: location
  tags: tags
}

@description('Resource id of the controller identity.')
output controllerId string = controller.id

@description('Client id of the controller identity.')
output controllerClientId string = controller.properties.clientId

@description('Principal (object) id of the controller identity.')
output controllerPrincipalId string = controller.properties.principalId

@description('Resource id of the gateway identity.')
output gatewayId string = gateway.id

@description('Client id of the gateway identity.')
output gatewayClientId string = gateway.properties.clientId

@description('Principal (object) id of the gateway identity.')
output gatewayPrincipalId string = gateway.properties.principalId
