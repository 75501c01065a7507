// Production: three instances on Azure Cache for Redis behind Azure Front Door (the app accepts
// only that profile's traffic; DNS points at the Front Door endpoint).
using '../main.bicep'

param environmentName = 'prod'
param namePrefix = 'ahg'
param dnsZoneName = 'azhexgate.example.com'
param dnsSubdomain = ''
param dnsTarget = 'azhexgate-prod.z01.azurefd.net'
param image = 'azhexgate.azurecr.io/azhexgate-server:1.0.0'
param skuName = 'P1v3'
param instances = 3
param operatorCidrs = [
  '203.0.113.0/24'
  '2001:db8::/48'
]
param storeUrl = 'rediss://ahg-prod.redis.cache.windows.net:6380'
param storePasswordSecretName = 'azhexgate-redis-password'
param frontDoorId = '00000000-0000-0000-0000-000000000000'
param certificateThumbprint = '0000000000000000000000000000000000000000'
param logRetentionDays = 90
