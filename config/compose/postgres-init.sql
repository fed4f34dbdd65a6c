-- The primary's database is created by the image (POSTGRES_DB); the secondary's here.
CREATE DATABASE geo_tracking OWNER geo;
