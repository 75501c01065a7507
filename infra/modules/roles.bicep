// Least-privilege role assignments.
//   controller identity: a custom role on the Relay namespace that can read the namespace, create,
//                        read and delete Hybrid Connections and their rules, and list keys
//                        (it signs the listeners' SAS tokens); nothing else.
//   gateway identity:    the built-in "Azure Relay Sender" data role on the namespace.
//   both identities:     "Key Vault Secrets User" on the vault (API keys, Redis password).

@description('Name of the Relay namespace (in this resource group).')
param relayName string

@description('Name of the Key Vault (in this resource group).')
param vaultName string

@description('Principal id of the controller identity.')
param controllerPrincipalId string

@description('Principal id of the gateway identity.')
param gatewayPrincipalId string

// Built-in role definition ids (the same in every tenant).
var relaySenderRoleId = '26baccc8-eea7-41f1-98f4-1762cc7f685d'
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

resource relay 'Microsoft.Relay/namespaces@2021-11-01' existing = {
  name: relayName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource controllerRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'azhexgate-relay-controller')
  properties: {
    roleName: 'AzHexGate Relay Controller (${resourceGroup().name})'
    description: 'Manage the Hybrid Connections of the AzHexGate Relay namespace and list its keys.'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: [
          'Microsoft.Relay/namespaces/read'
          'Microsoft.Relay/namespaces/authorizationRules/read'
          'Microsoft.Relay/namespaces/authorizationRules/listKeys/action'
          'Microsoft.Relay/namespaces/hybridConnections/read'
          'Microsoft.Relay/namespaces/hybridConnections/write'
          'Microsoft.Relay/namespaces/hybridConnections/delete'
          'Microsoft.Relay/namespaces/hybridConnections/authorizationRules/read'
          'Microsoft.Relay/namespaces/hybridConnections/authorizationRules/write'
          'Microsoft.Relay/namespaces/hybridConnections/authorizationRules/delete'
          'Microsoft.Relay/namespaces/hybridConnections/authorizationRules/listKeys/action'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource controllerOnRelay 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(relay.id, controllerPrincipalId, controllerRole.id)
  scope: relay
  properties: {
    roleDefinitionId: controllerRole.id
    principalId: controllerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource gatewayOnRelay 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(relay.id, gatewayPrincipalId, relaySenderRoleId)
  scope: relay
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', relaySenderRoleId)
    principalId: gatewayPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource controllerOnVault 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, controllerPrincipalId, keyVaultSecretsUserRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: controllerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource gatewayOnVault 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, gatewayPrincipalId, keyVaultSecretsUserRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: gatewayPrincipalId
    principalType: 'ServicePrincipal'
  }
}

@description('Resource id of the custom controller role.')
output controllerRoleId string = controllerRole.id
