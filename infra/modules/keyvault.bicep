// Key Vault holding the API keys of the management API (secrets named by the prefix below) and,
// optionally, the Redis password. Access is by Azure RBAC only (no access policies).

@description('Name of the vault (globally unique, 3-24 characters).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Operator CIDRs allowed through the vault firewall besides trusted Azure services.')
param operatorCidrs array = []

@description('Soft-delete retention in days.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    enablePurgeProtection: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: empty(operatorCidrs) ? 'Allow' : 'Deny'
      ipRules: [for cidr in operatorCidrs: { value: cidr }]
    }
  }
}

@description('Resource id of the vault.')
output id string = vault.id

@description('Name of the vault.')
output name string = vault.name

@description('URI of the vault, e.g. https://name.vault.azure.net/.')
output uri string = vault.properties.vaultUri
