// Staging: like production, two instances on Azure Cache for Redis, reached directly.
using '../main.bicep'

param environmentName = 'staging'
param namePrefix = 'ahg'
param dnsZoneName = 'azhexgate.example.com'
param dnsSubdomain = 'staging'
param image = 'azhexgate.azurecr.io/azhexgate-server:1.0.0'
param skuName = 'P1v3'
param instances = 2
param operatorCidrs = [
  '203.0.113.0/24'
  '2001:db8::/48'
]
param storeUrl = 'rediss://ahg-staging.redis.cache.windows.net:6380'
param storePasswordSecretName = 'azhexgate-redis-password'
