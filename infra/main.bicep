// AzHexGate on Azure App Service: the Relay namespace, the co-hosted gateway + controller app,
// Key Vault (API keys), DNS (wildcard and api records), observability and least-privilege role
// assignments. Deployed into one resource group:
//   az deployment group create -g RG -f infra/main.bicep -p infra/params/dev.bicepparam
// See docs/deploy-appservice.md.
targetScope = 'resourceGroup'

@description('Environment name; part of every resource name.')
@allowed([
  'dev'
  'staging'
  'prod'
])
param environmentName string

@description('Azure region of every resource.')
param location string = resourceGroup().location

@description('Short name prefix of the resources (lower case letters and digits).')
@minLength(2)
@maxLength(10)
param namePrefix string = 'ahg'

@description('Name of the existing Azure DNS zone in this resource group.')
param dnsZoneName string

@description('Sub-domain of this deployment inside the zone (e.g. "dev"); empty uses the zone itself.')
param dnsSubdomain string = ''

@description('Create the DNS records and the custom host name bindings.')
param manageDns bool = true

@description('Host name the DNS records point at instead of the app (e.g. the Front Door endpoint).')
param dnsTarget string = ''

@description('Container image of the co-hosted server (azhexgate-server).')
param image string

@description('App Service plan SKU.')
param skuName string = 'P1v3'

@description('Number of App Service instances; more than one needs storeUrl to be Redis.')
@minValue(1)
@maxValue(30)
param instances int = 1

@description('CIDRs of the operators: the only sources allowed to the api host, the SCM site and the vault firewall.')
@minLength(1)
param operatorCidrs array

@description('State store: memory: (one instance) or rediss://host:port (Azure Cache for Redis).')
param storeUrl string = 'memory:'

@description('Name of the vault secret holding the Redis password; empty for none.')
param storePasswordSecretName string = ''

@description('X-Azure-FDID of the Front Door profile in front of the app; empty when clients reach the app directly.')
param frontDoorId string = ''

@description('Thumbprint of the wildcard certificate uploaded to the app; empty binds the host names without TLS.')
param certificateThumbprint string = ''

@description('Days of log retention.')
param logRetentionDays int = 30

@description('Extra tags of every resource.')
param extraTags object = {}

var prefix = '${namePrefix}-${environmentName}'
var unique = uniqueString(resourceGroup().id, environmentName)
var domain = empty(dnsSubdomain) ? dnsZoneName : '${dnsSubdomain}.${dnsZoneName}'
var tags = union(
  {
    application: 'azhexgate'
    environment: environmentName
  },
  extraTags
)

module relay 'modules/relay.bicep' = {
  name: 'relay'
  params: {
    name: '${prefix}-relay-${unique}'
    location: location
    tags: tags
  }
}

module vault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: take('${namePrefix}kv${unique}', 24)
    location: location
    tags: tags
    operatorCidrs: operatorCidrs
  }
}

module observability 'modules/observability.bicep' = {
  name: 'observability'
  params: {
    prefix: prefix
    location: location
    tags: tags
    retentionInDays: logRetentionDays
  }
}

module identities 'modules/identity.bicep' = {
  name: 'identities'
  params: {
    prefix: prefix
    location: location
    tags: tags
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  params: {
    relayName: relay.outputs.name
    vaultName: vault.outputs.name
    controllerPrincipalId: identities.outputs.controllerPrincipalId
    gatewayPrincipalId: identities.outputs.gatewayPrincipalId
  }
}

module app 'modules/appservice.bicep' = {
  name: 'appservice'
  params: {
    prefix: prefix
    location: location
    tags: tags
    image: image
    skuName: skuName
    instances: instances
    domain: domain
    operatorCidrs: operatorCidrs
    controllerIdentityId: identities.outputs.controllerId
    controllerClientId: identities.outputs.controllerClientId
    gatewayIdentityId: identities.outputs.gatewayId
    gatewayClientId: identities.outputs.gatewayClientId
    relayHost: relay.outputs.host
    relayName: relay.outputs.name
    vaultUri: vault.outputs.uri
    storeUrl: storeUrl
    storePasswordSecretUri: empty(storePasswordSecretName) ? '' : '${vault.outputs.uri}secrets/${storePasswordSecretName}'
    insightsConnectionString: observability.outputs.insightsConnectionString
    workspaceId: observability.outputs.workspaceId
    frontDoorId: frontDoorId
  }
  // The app reads Key Vault references and Relay keys at start: grant the roles first.
  dependsOn: [
    roles
  ]
}

module dns 'modules/dns.bicep' = if (manageDns) {
  name: 'dns'
  params: {
    zoneName: dnsZoneName
    subdomain: dnsSubdomain
    target: empty(dnsTarget) ? app.outputs.defaultHostName : dnsTarget
    verificationId: app.outputs.verificationId
  }
}

module hostnames 'modules/hostnames.bicep' = if (manageDns) {
  name: 'hostnames'
  params: {
    siteName: app.outputs.name
    domain: domain
    certificateThumbprint: certificateThumbprint
  }
  dependsOn: [
    dns
  ]
}

@description('Public tunnel URL pattern.')
output tunnelUrl string = 'https://<id>.${domain}'

@description('Management API base URL.')
output apiUrl string = 'https://api.${domain}'

@description('Name of the web app.')
output appName string = app.outputs.name

@description('Default host name of the web app.')
output appHostName string = app.outputs.defaultHostName

@description('Relay namespace host.')
output relayHost string = relay.outputs.host

@description('Key Vault URI (the API keys go in its secret azhexgate-api-keys, one a line).')
output vaultUri string = vault.outputs.uri

@description('Client id of the controller identity.')
output controllerClientId string = identities.outputs.controllerClientId

@description('Client id of the gateway identity.')
output gatewayClientId string = identities.outputs.gatewayClientId
