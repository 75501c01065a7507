// Linux App Service running the co-hosted gateway + controller image (azhexgate-server).
//
// Access restrictions: the public tunnel host (*.<domain>) is open to everyone. App Service
// restrictions apply to a whole app, not to one host name, so the api host is limited to the
// operator CIDRs by the service itself (its allow-list option below) and, when Azure Front Door
// is in front (frontDoorId set), by the Front Door WAF; the app then accepts only traffic from
// that Front Door profile (service tag AzureFrontDoor.Backend + its X-Azure-FDID). The SCM (Kudu)
// site is always limited to the operator CIDRs.

@description('Name prefix of the resources.')
param prefix string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Container image of the co-hosted server, e.g. myregistry.azurecr.io/azhexgate-server:1.0.0.')
param image string

@description('App Service plan SKU (Linux).')
param skuName string = 'P1v3'

@description('Number of instances. More than one needs a Redis store (storeUrl).')
@minValue(1)
@maxValue(30)
param instances int = 1

@description('Public domain: tunnels are https://<id>.<domain>, the API is https://api.<domain>.')
param domain string

@description('Operator CIDRs allowed to the api host and the SCM site.')
@minLength(1)
param operatorCidrs array

@description('Resource id of the controller identity.')
param controllerIdentityId string

@description('Client id of the controller identity.')
param controllerClientId string

@description('Resource id of the gateway identity.')
param gatewayIdentityId string

@description('Client id of the gateway identity.')
param gatewayClientId string

@description('Host of the Relay namespace.')
param relayHost string

@description('Name of the Relay namespace.')
param relayName string

@description('URI of the Key Vault that holds the API keys.')
param vaultUri string

@description('Name of the vault secret holding the API keys (comma or newline separated).')
param apiKeysSecretName string = 'azhexgate-api-keys'

@description('State store: memory: (one instance only) or rediss://host:port.')
param storeUrl string = 'memory:'

@description('Key Vault secret URI of the Redis password; empty when the store needs none.')
param storePasswordSecretUri string = ''

@description('Connection string of Application Insights.')
param insightsConnectionString string

@description('Resource id of the Log Analytics workspace for diagnostic logs.')
param workspaceId string

@description('Id (X-Azure-FDID) of the Front Door profile in front of the app; empty for none.')
param frontDoorId string = ''

// Application port of the container (the gateway's public port).
var publicPort = 8080

var frontDoorRules = [
  {
    name: 'front-door'
    description: 'Only the Front Door profile of this deployment.'
    action: 'Allow'
    priority: 100
    tag: 'ServiceTag'
    ipAddress: 'AzureFrontDoor.Backend'
    headers: {
      'x-azure-fdid': [
        frontDoorId
      ]
    }
  }
]

var scmRules = [
  for (cidr, i) in operatorCidrs: {
    name: 'operator-${i}'
    description: 'Operator network ${cidr}'
    action: 'Allow'
    priority: 100 + i
    ipAddress: cidr
  }
]

var storePasswordSettings = empty(storePasswordSecretUri)
  ? []
  : [
      {
        name: 'AZHEXGATE_STORE_PASSWORD'
        value: '@Microsoft.KeyVault(SecretUri=${storePasswordSecretUri})'
      }
      {
        name: 'AZHEXGATE_CONTROLLER_STORE_PASSWORD'
        value: '@Microsoft.KeyVault(SecretUri=${storePasswordSecretUri})'
      }
    ]

// Environment of the container: AZHEXGATE_<OPTION> of the gateway's and the controller's option
// tables (gateway/main.c, controller/main.c, controller/src/controller.c); LIST options are
// comma-separated. See docs/deploy-appservice.md.
var appSettings = concat(
  [
    { name: 'WEBSITES_PORT', value: string(publicPort) }
    { name: 'WEBSITES_ENABLE_APP_SERVICE_STORAGE', value: 'false' }
    { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insightsConnectionString }
    { name: 'AZHEXGATE_LOG_FORMAT', value: 'json' }
    // gateway
    { name: 'AZHEXGATE_DOMAIN', value: domain }
    { name: 'AZHEXGATE_LISTEN_PORT', value: string(publicPort) }
    { name: 'AZHEXGATE_STORE_URL', value: storeUrl }
    { name: 'AZHEXGATE_RELAY_AUTH', value: 'entra' }
    { name: 'AZHEXGATE_IDENTITY_CLIENT_ID', value: gatewayClientId }
    { name: 'AZHEXGATE_API_ALLOW_CIDR', value: join(operatorCidrs, ',') }
    // controller
    { name: 'AZHEXGATE_CONTROLLER_STORE', value: storeUrl }
    { name: 'AZHEXGATE_CONTROLLER_PUBLIC_SCHEME', value: 'https' }
    { name: 'AZHEXGATE_CONTROLLER_PUBLIC_DOMAIN', value: domain }
    { name: 'AZHEXGATE_CONTROLLER_RELAY_HOST', value: relayHost }
    { name: 'AZHEXGATE_CONTROLLER_ARM_SUBSCRIPTION', value: subscription().subscriptionId }
    { name: 'AZHEXGATE_CONTROLLER_ARM_RESOURCE_GROUP', value: resourceGroup().name }
    { name: 'AZHEXGATE_CONTROLLER_ARM_NAMESPACE', value: relayName }
    { name: 'AZHEXGATE_CONTROLLER_IDENTITY_KIND', value: 'appservice' }
    { name: 'AZHEXGATE_CONTROLLER_IDENTITY_CLIENT_ID', value: controllerClientId }
    { name: 'AZHEXGATE_CONTROLLER_AUTH_KEYVAULT_URL', value: vaultUri }
    { name: 'AZHEXGATE_CONTROLLER_AUTH_KEYVAULT_SECRET', value: apiKeysSecretName }
    { name: 'AZHEXGATE_CONTROLLER_ALLOW_CIDR', value: join(operatorCidrs, ',') }
  ],
  storePasswordSettings
)

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  name: '${prefix}-plan'
  location: location
  tags: tags
  kind: 'linux'
  sku: {
    name: skuName
    capacity: instances
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2023-12-01' = {
  name: '${prefix}-server'
  location: location
  tags: tags
  kind: 'app,linux,container'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${controllerIdentityId}': {}
      '${gatewayIdentityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    keyVaultReferenceIdentity: controllerIdentityId
    siteConfig: {
      linuxFxVersion: 'DOCKER|${image}'
      alwaysOn: true
      http20Enabled: true
      webSocketsEnabled: true
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      appSettings: appSettings
      ipSecurityRestrictionsDefaultAction: empty(frontDoorId) ? 'Allow' : 'Deny'
      ipSecurityRestrictions: empty(frontDoorId) ? [] : frontDoorRules
      scmIpSecurityRestrictionsUseMain: false
      scmIpSecurityRestrictionsDefaultAction: 'Deny'
      scmIpSecurityRestrictions: scmRules
    }
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: site
  properties: {
    workspaceId: workspaceId
    logs: [
      { category: 'AppServiceConsoleLogs', enabled: true }
      { category: 'AppServiceHTTPLogs', enabled: true }
      { category: 'AppServicePlatformLogs', enabled: true }
    ]
    metrics: [
      { category: 'AllMetrics', enabled: true }
    ]
  }
}

@description('Name of the web app.')
output name string = site.name

@description('Default host name of the web app (target of the DNS records).')
output defaultHostName string = site.properties.defaultHostName

@description('Custom domain verification id (value of the asuid TXT records).')
output verificationId string = site.properties.customDomainVerificationId
