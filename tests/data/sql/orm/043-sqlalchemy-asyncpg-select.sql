SELECT users.id, users.name, users.fullname 
FROM users 
WHERE users.name = $1::VARCHAR